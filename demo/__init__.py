"""`make demo`: the whole loop on embedded defaults, with demo data moving both ways."""
