"""AdSEE, the part that fits without images."""
