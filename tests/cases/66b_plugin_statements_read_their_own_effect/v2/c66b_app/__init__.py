"""Message decoding (66b_plugin_statements_read_their_own_effect)."""
