"""Case 71: an HTML renderer whose attribute quoting is chosen in a class body."""
