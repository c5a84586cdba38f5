"""vane.simulations."""
