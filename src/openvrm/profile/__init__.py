"""Personal data: typed profile fields with a full history of changes."""
