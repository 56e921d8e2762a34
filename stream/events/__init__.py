"""The event contract: what a producer sends, how messages are decoded, and tables from files and uploads."""
