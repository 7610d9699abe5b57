"""Example third-party dha plugin."""
