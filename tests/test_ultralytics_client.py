"""Ultralytics' own Triton client, ``YOLO("grpc://host:8001/yolov8_infer", task="detect")``, against our server.

Its client class (``ultralytics/utils/triton.py``) needs only numpy and tritonclient, so it is run
here as Ultralytics ships it, read from the ultralytics wheel that setup downloads for the sample
photos; the rest of Ultralytics (predict's own pre- and postprocessing) needs torch, and our
Preprocessor and Postprocessor stand in for it, as the parity tests show they may.
"""

import numpy as np
import pytest
from matching import CPU_PARITY, mismatches
from ultralytics_remote import load_triton_remote_model

from python_backends.postprocess.postprocessor import Postprocessor
from python_backends.preprocess.preprocessor import Preprocessor


@pytest.fixture(scope="module")
def triton_remote_model() -> type:
    return load_triton_remote_model()


def test_ultralytics_client_gets_class_names_and_our_detections(triton, triton_remote_model, sample_images, reference):
    model = triton_remote_model(f"grpc://{triton.grpc_url}/yolov8_infer")
    assert model.metadata["names"] == {0: "Normal", 1: "Fall"}  # not class0 ... class998
    assert (model.metadata["task"], model.metadata["imgsz"]) == ("detect", [640, 640])
    pixels, mapping = Preprocessor().from_bytes(sample_images["bus.jpg"].read_bytes())
    (head,) = model(np.divide(pixels[None], np.float32(255), dtype=np.float32))  # predict's float32 input, im / 255
    found = Postprocessor(num_classes=len(model.metadata["names"])).detect(head[0], mapping)
    got = [
        {"class_id": int(c), "score": float(s), "box": [float(v) for v in b]}
        for b, s, c in zip(found.boxes, found.scores, found.class_ids)
    ]
    want = reference["results"]["conf=0.25,iou=0.7"]["bus.jpg"]["detections"]
    problems = mismatches(got, want, **CPU_PARITY)
    assert want and not problems, problems
