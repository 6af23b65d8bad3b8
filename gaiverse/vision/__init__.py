"""Vision layer shared by personalization, avatar and NPC: OCR (Tesseract), faces (Haar), video decoding (PyAV).

``gaiverse.vision.ocr.read_text``, ``gaiverse.vision.faces.detect_faces`` and
``gaiverse.vision.video.decode``; each loads what it needs on first use.
"""
