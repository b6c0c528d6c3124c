"""blockhub-sim: realistic department feeds over the real transports (see README.md)."""
