"""The tiny world: what makes its base model a faithful stand-in for Stable Diffusion (criteria, measurement)."""
