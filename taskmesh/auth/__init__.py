"""Passwords, tokens and the permission table shared by every gRPC server."""
