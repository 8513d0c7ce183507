"""The core serving contract's optional inputs and list params (tasks/core/serving.py): an optional column
is passed on when present and never required; a list default becomes a list ParamSpec; both survive
MLflow's own schema check through a logged model."""
from __future__ import annotations

import pandas as pd
import pytest

from tasks.core.serving import ServingInputError, StudyPyfunc


class Echo(StudyPyfunc):
    inputs = (("a", "string"),)
    optional_inputs = (("b", "string"),)
    outputs = (("got", "string"),)
    params = (("names", "string", ["x", "y"]),)

    def load(self, model_file):
        pass

    def prepare(self, row, params):
        return f"{row['a']}|{row.get('b', '<absent>')}|{','.join(params['names'])}"

    def infer(self, items, params):
        return [[{"got": it}] for it in items]


def test_optional_column_is_passed_when_present_and_absent_otherwise():
    m = Echo()
    assert m.input_rows(pd.DataFrame({"a": ["1"], "z": ["extra"]})) == [{"a": "1"}]
    assert m.input_rows(pd.DataFrame({"a": ["1", "2"], "b": ["p", ""]})) == [{"a": "1", "b": "p"}, {"a": "2", "b": ""}]
    assert m.input_rows({"a": ["1", "2"], "b": ["p", "q"]})[1] == {"a": "2", "b": "q"}
    # MLflow's schema check hands a dict of lists on as one row of list cells: spread, optional included
    assert m.input_rows(pd.DataFrame({"a": [["1", "2"]], "b": [["p", "q"]]})) == [{"a": "1", "b": "p"}, {"a": "2", "b": "q"}]
    with pytest.raises(ServingInputError, match=r"missing column\(s\) \['a'\]"):
        m.input_rows(pd.DataFrame({"b": ["p"]}))
    out = m.predict(None, pd.DataFrame({"a": ["1", "2"]}), params={"names": ["k"]})
    assert out["got"].tolist() == ["1|<absent>|k", "2|<absent>|k"]


def test_signature_marks_optional_inputs_and_list_params():
    sig = Echo.signature()
    cols = {c.name: c for c in sig.inputs.inputs}
    assert cols["a"].required and not cols["b"].required
    spec = {p.name: p for p in sig.params.params}["names"]
    assert spec.default == ["x", "y"] and spec.shape == (-1,)


def test_through_a_logged_model_mlflow_accepts_the_optional_column_and_a_list_param(tmp_path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "m.txt").write_text("x")
    exp = mlflow.create_experiment("optional", artifact_location=(tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=exp):
        info = mlflow.pyfunc.log_model(name="m", python_model=Echo(), artifacts={"model": str(tmp_path / "m.txt")},
                                       signature=Echo.signature(), pip_requirements=[])
    served = mlflow.pyfunc.load_model(info.model_uri)
    assert served.predict(pd.DataFrame({"a": ["1"]}))["got"].tolist() == ["1|<absent>|x,y"]
    out = served.predict(pd.DataFrame({"a": ["1"], "b": ["p"]}), params={"names": ["u", "v", "w"]})
    assert out["got"].tolist() == ["1|p|u,v,w"]
