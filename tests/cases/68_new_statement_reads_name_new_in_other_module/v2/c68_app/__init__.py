"""Query building (68_new_statement_reads_name_new_in_other_module)."""
