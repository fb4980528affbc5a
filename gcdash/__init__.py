"""gcdash: how adversarial attacks move a CNN's explanations.

Reproduces and extends Chakraborty et al., "Generalizing Adversarial Explanations with Grad-CAM" (CVPRW 2022):
FGSM on clean images, CAM heatmaps of clean and attacked inputs, SSIM → NISSIM per image, MOD per eps and VID
across eps. The engine lives here and never imports streamlit (only ``gcdash.ui`` does).
"""

__version__ = "0.1.0"
