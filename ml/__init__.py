"""Image captioning in plain PyTorch: encoder, decoders, generation, training.

Nothing in this package imports Django, so it can be trained and tested on its own.
"""
