"""Label maps (data in conf/base/labels.yml) -> the label of a sample under a chosen label set (interface).

Contract used by the index builder:
    normalise_emotion(raw) -> str                      "Others"/"other"/"Other " -> "others", "happy" -> "happiness"
    LabelSet.from_config(name, cfg) / load_label_sets(cfg: dict) -> dict[str, LabelSet]
    LabelSet.classes -> tuple[str, ...]                 class order = label_id
    LabelSet.assign(dataset, emotion_raw) -> Assignment (label|None, label_id|None, reason_code|None, reason|None)
"""
