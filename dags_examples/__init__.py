"""Example workflows shipped with the provider; see README "Example" for how to use them."""
