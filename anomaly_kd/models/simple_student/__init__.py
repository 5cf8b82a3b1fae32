"""Simple Student: STFPM with a slimmer ResNet-18 student (thesis "Simple Student")."""

from anomaly_kd.models.simple_student.lightning_model import SimpleStudent
from anomaly_kd.models.simple_student.torch_model import SimpleStudentModel, slim_resnet18

__all__ = ["SimpleStudent", "SimpleStudentModel", "slim_resnet18"]
