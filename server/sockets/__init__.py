"""The ``/meeting`` socket.io namespace: its wire models, its events, and the guard that ends a
socket with its session."""
