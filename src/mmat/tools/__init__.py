"""Operators the reasoner calls: caption, OCR, open-vocabulary detection, face detection, RAG search.

Everything goes through :class:`mmat.tools.runner.ToolRunner` (cached, de-duplicated, off the event
loop, errors as data). Operators and their rendered observation text (``ToolResult.text``):

=================  =====================  =========================================================
operator           default backend        text
=================  =====================  =========================================================
``ocr``            ``rapidocr``           rows in reading order, table cells joined by ``" | "``;
                                          ``No text is detected in the image.`` when empty
``face_detection`` ``yuface``             ``There is one face with a coordinate: [x1, y1, x2, y2]``;
                                          ``There are N faces with coordinates: [..], [..]``;
                                          ``There is no face in the image.`` (pixels, 1 decimal)
``label_bbox``     ``grounding_dino``     ``{'dog': [[0.12, 0.3, 0.55, 0.91]]}`` (normalised, 2 dp);
                                          needs ``tools.options.label_bbox.checkpoint``
``image_caption``  ``ccot_caption``       the teacher's CCoT caption, or a fallback whose first line
                                          is ``[Fallback caption composed from operator outputs; ...]``
RAG                ``search.bm25``        ``Retrieved search results (untrusted ...):`` then
                                          ``[1] Title: snippet`` lines, capped at ``search.max_chars``
=================  =====================  =========================================================

Adding a backend: subclass :class:`mmat.tools.base.Tool` (or ``BatchTool``/``AsyncTool``), set
``name`` to the operator, ``version``, ``description``, implement ``availability()``/``setup()``/
``run()``, and register it in the ``mmat.tools`` entry-point group; select it with
``tools.backends.<operator>: <entry-point name>``. Search backends subclass
:class:`mmat.tools.search.SearchBackend` and register as ``search.<name>``.
"""
