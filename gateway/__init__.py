"""The edges that talk to other systems: one choke point for SQL, one for Salesforce HTTP."""
