"""Stage 1, ``yolov8_preprocess``: encoded images (IMAGE) or BGR frames (FRAME) → network input.

Decodes exactly as Ultralytics reads files, refusing bad or oversized input before decoding
(``image_decode``), letterboxes like Ultralytics (``letterbox``), and normalizes to float32 (3, H, W)
RGB in [0, 1]: with OpenCV on the CPU (``preprocessor``) or CV-CUDA on the GPU
(``cvcuda_preprocessor``); ``select`` picks one from the ``device`` parameter. A classifier's images
get Ultralytics' classify transform instead (``classify``: resize, centre crop; CPU). It also returns
each image's LETTERBOX mapping, float32 (5,), which postprocess uses to map boxes back.

May import ``python_backends.triton_helpers``; not the other stages.
"""
