"""The char-CNN-RNN text encoder of Reed et al.: the Keras model and its training, embedding and retrieval."""
