"""Domain post-training after RedOne: continued pre-training on domain text (loss on all
tokens, mixed with general self-replay), multi-task SFT (loss on the answers), DPO on the
model's own checkable samples; and the eight-task recommendation-domain suite that compares
base, CPT, CPT+SFT, CPT+SFT+DPO and one SFT model per task.

``data`` reads the sources and splits them, ``tasks`` builds the suite and scores it,
``general`` holds the general prompts, ``train`` is the trl adapter (resumable CPT / SFT / DPO,
full or LoRA), ``recipe`` the stages. Importing this package imports nothing heavy.
"""

from llmrec.finetune.domain.recipe import (STAGES, VARIANTS, CptConfig, Domain, DomainConfig,
                                           DomainEvalConfig, DpoStageConfig, SftStageConfig,
                                           domain_documents, leakage, mix_general)
from llmrec.finetune.domain.tasks import MAIN_METRIC, TASKS, SuiteConfig

__all__ = ["STAGES", "VARIANTS", "TASKS", "MAIN_METRIC", "CptConfig", "Domain", "DomainConfig",
           "DomainEvalConfig", "DpoStageConfig", "SftStageConfig", "SuiteConfig",
           "domain_documents", "leakage", "mix_general"]
