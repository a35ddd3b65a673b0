"""misc package of the StackGAN Keras 3 port."""
