"""Machine learning: model families and their baselines, walk-forward evaluation, and the evidence gates decide on.

Assets live in ``crypto_assets/assets``; this package holds the modelling they call. Heavy
libraries (scikit-learn, LightGBM, arch) are imported inside the functions that use them.
"""
