"""MCX (Multi Commodity Exchange of India): daily bhavcopy CSV -> daily Bars."""
