"""Retention prediction for returning users with privileged onboarding content (OCARM).

- :mod:`llmrec.retention.proxy` -- the return-visit proxy on a timestamped rating log (sessions,
  returns, anchors, labels per horizon, observable features, onboarding content, time split);
- :mod:`llmrec.retention.model` -- the teacher (observable + onboarding content), the student
  (observable only, optionally distilled towards the frozen teacher's representation), their
  training with early stopping, and AUC / GAUC.

The OCARM design here is ours, built from the published abstract and summary only (no official
code): see ``docs/retention.md``.
"""

from llmrec.retention.proxy import ProxyConfig, ReturnEvents, build_events, load_events

__all__ = ["ProxyConfig", "ReturnEvents", "build_events", "load_events"]
