# Shaped like the PyTorch inference toolkit's test handler (test/resources/mnist/model_cpu/code/mnist.py):
# only model_fn; the container's default input_fn / predict_fn / output_fn handle the requests.
from __future__ import absolute_import

import logging
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

logger = logging.getLogger(__name__)
logger.setLevel(logging.DEBUG)
logger.addHandler(logging.StreamHandler(sys.stdout))


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 4, kernel_size=3)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(4 * 3 * 3, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv1(x)), 2))
        x = x.view(-1, 4 * 3 * 3)
        x = F.dropout(x, training=self.training)
        return F.log_softmax(self.fc1(x), dim=1)


def model_fn(model_dir):
    logger.info("model_fn")
    model = Net()
    with open(os.path.join(model_dir, "model.pth"), "rb") as f:
        model.load_state_dict(torch.load(f))
    return model
