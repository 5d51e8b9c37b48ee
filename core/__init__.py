"""The pure sync core: parsing, conversion, coalescing, conflict rules and batching. No I/O here."""
