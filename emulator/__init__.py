"""A local Salesforce look-alike that follows Salesforce's documented wire formats."""
