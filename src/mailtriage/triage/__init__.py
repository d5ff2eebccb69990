"""Learning from agents: corrections, reclassification and the statistical category model.

* :mod:`mailtriage.triage.model` - the trained model and the gate that decides when it
  may speak (pure; scikit-learn is needed only to load or train one),
* :mod:`mailtriage.triage.training` - building a model from labelled examples,
* :mod:`mailtriage.triage.corrections` - the database side: corrections, reclassification
  and the corrections as training examples.
"""
