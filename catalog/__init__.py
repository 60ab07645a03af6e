"""Products, spare parts, bills of materials and registered purchases: the ground truth."""
