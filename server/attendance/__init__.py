"""Attendance: every join, leave, drop and head count of every site, stored once, sent up the
tree, and reported per level (docs/architecture.md, "Attendance")."""
