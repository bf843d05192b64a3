"""Label Studio ML backend serving AutoAL rankings."""
