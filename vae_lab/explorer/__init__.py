"""The latent explorer: which checkpoints it may show (runs), what it draws (session), the web page (page)."""
