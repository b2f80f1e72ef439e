"""Built-in policies. Each module is an ordinary plugin registered through the plugin manager."""
