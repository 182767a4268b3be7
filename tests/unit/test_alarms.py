"""Every custom metric an alarm in template.yaml watches is one that Reverie emits (names in one place)."""

from reverie.platform.metric_names import Metric
from reverie_dev.local.template import Template


def test_alarms_watch_metrics_that_exist():
    alarms = Template().of_type("AWS::CloudWatch::Alarm")
    custom = {a["Properties"]["MetricName"] for a in alarms.values() if a["Properties"]["Namespace"] == "Reverie"}
    assert custom, "no alarm on Reverie's own metrics"
    assert custom <= {m.value for m in Metric}, custom - {m.value for m in Metric}


def test_dlqs_stalls_outbox_and_lost_memories_are_alarmed():
    alarms = Template().of_type("AWS::CloudWatch::Alarm")
    watched = {a["Properties"]["MetricName"] for a in alarms.values()}
    assert {"ReflectionStalled", "MemoryNotSaved", "OutboxOldestAgeSeconds", "EngineDown", "HeldJobOverdueSeconds",
            "ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"} <= watched
