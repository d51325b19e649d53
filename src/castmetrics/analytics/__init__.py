"""Analytics: time series and breakdowns over rollups plus the raw tail."""
