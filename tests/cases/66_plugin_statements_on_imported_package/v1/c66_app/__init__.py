"""Message decoding (66_plugin_statements_on_imported_package)."""
