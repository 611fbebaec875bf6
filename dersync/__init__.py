"""dersync: keeps AEMO's WEM DER Register in step with a network operator's DER records."""

__version__ = "0.1.0"
