"""Official benchmark metrics, one module per benchmark.

- `davis`: J, F and per-object statistics (davis2017-evaluation numbers, faster F).
- `davis_eval`: DAVIS-2017 semi-supervised / unsupervised evaluation of a results tree.
- `refdavis`: Ref-DAVIS17 index maps, PNG writing and the mean over 4 annotator variants.
- `mevis`: MeViS J&F per expression from mask_dict RLEs and prediction PNGs.
- `submission`: Ref-YouTube-VOS and MeViS submission zips, checked for completeness.
- `a2d`: A2D/JHMDB-Sentences mAP (COCOeval) and top-1 IoU metrics.
- `refcoco`: RefCOCO/+/g top-1 mask and box metrics, GIoU hit rates.
- `referring`, `stream`, `report`: shared top-1 IoU helpers, folder/zip mask reading,
  atomic CSV and bar-plot writing.
"""
