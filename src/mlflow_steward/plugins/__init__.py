"""The plugin host: hook specifications, registration types and the plugin manager."""
