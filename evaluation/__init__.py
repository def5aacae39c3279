"""Accuracy of a detector on a labelled dataset: Ultralytics dataset files in, COCO mAP out.

``evaluation.dataset`` reads a dataset (``load_dataset``) and ``evaluation.labels`` its label files, as
Ultralytics reads them; ``evaluation.coco`` scores predictions against it (``evaluate``);
``evaluation.detection_match`` pairs two detection lists of the same images (INT8 against FP32, GPU against
CPU). The package imports nothing else of this project, so the client (``python -m client val``) and prepare
(INT8 calibration checks) both use it without pulling in each other; of what serves, only those two do.
"""
