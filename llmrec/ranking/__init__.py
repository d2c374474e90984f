"""Ranking (CTR) engine: features encoded once into tensors, backbones, a GPU trainer, metrics.

``features``   canonical tables + a split -> a :class:`~llmrec.ranking.features.FeatureSet` of
               integer tensors with vocabularies and a :class:`FeatureSpec` every backbone takes.
``backbones``  one CTR model per file (DNN, DeepFM, DCN, DCNv2, xDeepFM, AutoInt, FiBiNET, FiGNN,
               DIN, DIEN, FinalMLP, GDCN), listed in ``registry``.
``trainer``    data resident on the device, batches as index slices, bf16 autocast, early
               stopping on validation AUC, safetensors checkpoints and resume, optional DDP
               (its options: ``train_config.TrainConfig``).
``metrics``    AUC, gAUC and LogLoss computed with tensor ops on the device.
``layers``     the shared feature embedding, MLP and first-order term.
``popularity`` the item-popularity baseline every backbone must beat.
``pipeline``   ``RankConfig`` and the end-to-end run (data -> split -> features -> training).
``synthetic``  small synthetic tables + split for tests and demos.
``cli``        ``llmrec rank train|popularity|features|models``.

Nothing heavy is imported here: ``import llmrec.ranking`` stays cheap.
"""
