"""The node's HTTP side: pages (Jinja2), the JSON API, and what guards every request."""
