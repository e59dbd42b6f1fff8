"""From OpenStreetMap and trip logs to typed, versioned artifacts."""
