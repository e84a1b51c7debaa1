"""The front end: audio in, log-mel features out.

- ``audio``        reading and checking audio (16 kHz mono PCM; any common format for recordings)
- ``features``     the log-mel front end the models train on (torch batched and numpy streaming, same numbers)
- ``intfrontend``  the integer front end's executable specification (int16 PCM -> the network's int8 codes)
- ``streaming``    windows of frames over a stream (training centre windows, streaming runner)
"""
