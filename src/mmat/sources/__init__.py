"""Foundation loaders, one per dataset, and the question templates."""
