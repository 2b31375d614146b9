"""The numeric engine of crossentropy_ref (under construction)."""
