"""The cascade: child-node credentials, the parent's ``/node`` namespace, a child's link up."""
