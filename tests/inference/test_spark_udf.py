"""The packaged model scores a Spark DataFrame through ``mlflow.pyfunc.spark_udf``, as the core does."""

import os
import sys

import pytest
from answers import assert_same_answer

from two_tower_recsys.inference.pyfunc_model import RECOMMENDATION_FORMAT, SPARK_RESULT_TYPE
from two_tower_recsys.inference.recommender import Recommender

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark():
    pyspark_sql = pytest.importorskip("pyspark.sql")
    # The executors' Python must be this interpreter (it has the model's requirements).
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    session = (
        pyspark_sql.SparkSession.builder.master("local[1]")
        .appName("two-tower-spark-udf-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    yield session
    session.stop()


def test_spark_udf_answers_equal_the_cores(spark, packaged_model, random_index_dir):
    import mlflow.pyfunc
    from pyspark.sql.functions import struct

    users = [*range(1, 201), 424242]  # every user of the index and an unknown one
    frame = spark.createDataFrame([(user, 1 + user % 30) for user in users], ["user_id", "k"]).repartition(3)
    recommend = mlflow.pyfunc.spark_udf(
        spark,
        str(packaged_model),
        result_type=SPARK_RESULT_TYPE,
        env_manager="local",
        params={RECOMMENDATION_FORMAT: "structs"},
    )
    scored = frame.withColumn("answer", recommend(struct("user_id", "k"))).select("user_id", "answer")
    got = {row.user_id: row.answer.asDict(recursive=True) for row in scored.collect()}

    core = Recommender.from_artifacts(random_index_dir)
    expected = core.recommend(users, [1 + user % 30 for user in users])
    assert sorted(got) == sorted(users)
    for answer in expected:
        spark_answer = got[answer.user_id]
        assert {key: spark_answer[key] for key in ("user_id", "k", "fallback")} == {
            "user_id": answer.user_id,
            "k": answer.k,
            "fallback": answer.fallback,
        }
        assert_same_answer(spark_answer, answer, answer.user_id)
    assert got[424242]["fallback"] is True
