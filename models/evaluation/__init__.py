"""ETA error metrics and ``nareta evaluate``."""
