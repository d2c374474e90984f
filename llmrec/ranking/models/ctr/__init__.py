"""CTR models: one per file, each taking a :class:`~llmrec.ranking.features.FeatureSpec` first
and its hyper-parameters as keyword arguments; ``forward(batch)`` returns ``{"logit": [B]}``
(plus ``aux_loss`` in training mode for an extra objective, as DIEN)."""

TASKS = ("binary", "regression", "listwise")
# (name, module, class), imported when first used so that listing models stays cheap
MODELS = (
    ("dnn", "llmrec.ranking.models.ctr.dnn", "DNN"),
    ("deepfm", "llmrec.ranking.models.ctr.deepfm", "DeepFM"),
    ("dcn", "llmrec.ranking.models.ctr.dcn", "DCN"),
    ("dcnv2", "llmrec.ranking.models.ctr.dcnv2", "DCNv2"),
    ("xdeepfm", "llmrec.ranking.models.ctr.xdeepfm", "XDeepFM"),
    ("autoint", "llmrec.ranking.models.ctr.autoint", "AutoInt"),
    ("fibinet", "llmrec.ranking.models.ctr.fibinet", "FiBiNET"),
    ("fignn", "llmrec.ranking.models.ctr.fignn", "FiGNN"),
    ("din", "llmrec.ranking.models.ctr.din", "DIN"),
    ("dien", "llmrec.ranking.models.ctr.dien", "DIEN"),
    ("finalmlp", "llmrec.ranking.models.ctr.finalmlp", "FinalMLP"),
    ("gdcn", "llmrec.ranking.models.ctr.gdcn", "GDCN"),
    ("fgcnn", "llmrec.ranking.models.ctr.fgcnn", "FGCNN"),
    ("optinter", "llmrec.ranking.models.ctr.optinter", "OptInter"),
    ("qin", "llmrec.ranking.models.ctr.qin", "QIN"),
    ("sdim", "llmrec.ranking.models.ctr.sdim", "SDIM"),
    ("unimixer", "llmrec.ranking.models.ctr.unimixer", "UniMixer"),
    ("unimixing_lite", "llmrec.ranking.models.ctr.unimixer", "UniMixingLite"),
    ("rar", "llmrec.ranking.models.ctr.rar", "RAR"),
)
