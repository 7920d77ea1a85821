"""Request handlers (case 07: a method using super() and __class__ changes)."""
